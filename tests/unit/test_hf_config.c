/* config.json as transformers 4.4x-5.x writes it: every spelling of a key is read to the same
 * value, and every key that asks for computation this engine does not do is refused with a
 * message naming it (README "config.json keys").
 *
 * Fixture: the weights and tokenizer of tests/data/hf_ref/model are linked into a temporary
 * folder and config.json is rewritten for each case from the fixture's own config. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "infer/model.h"

static char g_dir[64];
static json_t *g_base;

/* Writes the base config with `patch` applied (each key set to its value, an explicit null
 * included; the string "<delete>" removes the key), then loads. */
static int load_with(const char *patch, Model *m, Err *err) {
    json_t *c = json_deep_copy(g_base);
    json_error_t je;
    json_t *p = json_loads(patch, 0, &je);
    if (!p) {
        fprintf(stderr, "bad patch %s: %s\n", patch, je.text);
        exit(2);
    }
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
        if (json_is_string(v) && !strcmp(json_string_value(v), "<delete>")) json_object_del(c, k);
        else json_object_set(c, k, v);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", g_dir);
    if (json_dump_file(c, path, JSON_INDENT(1))) exit(2);
    json_decref(p);
    json_decref(c);
    memset(err, 0, sizeof *err);
    return model_load(m, g_dir, NULL, err);
}

/* Loads and returns rope_theta (or -1 when refused). */
static double theta_of(const char *patch) {
    Model m;
    Err err;
    if (load_with(patch, &m, &err)) {
        fprintf(stderr, "  (%s: %s)\n", patch, err.msg);
        return -1;
    }
    double t = m.cfg.rope_theta;
    model_free(&m);
    return t;
}

/* The load is refused and the message names `needle` and config.json. */
static void refused(const char *patch, const char *needle) {
    Model m;
    Err err;
    int rc = load_with(patch, &m, &err);
    CHECK_MSG(rc == -1, "%s loads; expected a refusal naming %s", patch, needle);
    if (rc == 0) {
        model_free(&m);
        return;
    }
    CHECK_MSG(strstr(err.msg, needle) && strstr(err.msg, "config.json"),
              "%s: message \"%s\" does not name %s and config.json", patch, err.msg, needle);
}

static void loads(const char *patch) {
    Model m;
    Err err;
    int rc = load_with(patch, &m, &err);
    CHECK_MSG(rc == 0, "%s is refused: %s", patch, err.msg);
    if (rc == 0) model_free(&m);
}

static int has_stop(const Model *m, int id) {
    for (int i = 0; i < m->cfg.n_stop; i++)
        if (m->cfg.stop_ids[i] == id) return 1;
    return 0;
}

int main(void) {
    const char *src = BN_TEST_DATA "/hf_ref/model";
    snprintf(g_dir, sizeof g_dir, "/tmp/bn-hfconfig-XXXXXX");
    REQUIRE(mkdtemp(g_dir));
    const char *files[] = {"model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 2; i++) {
        char a[600], b[200];
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", g_dir, files[i]);
        REQUIRE(symlink(a, b) == 0);
    }
    char cp[600];
    snprintf(cp, sizeof cp, "%s/config.json", src);
    g_base = json_load_file(cp, 0, NULL);
    REQUIRE(g_base);
    /* the base as transformers 5 writes it: theta only inside rope_parameters */
    json_object_del(g_base, "rope_theta");
    json_object_del(g_base, "torch_dtype");

    /* rope_theta, every spelling */
    CHECK_NEAR(theta_of("{\"rope_parameters\": {\"rope_theta\": 10000.0, \"rope_type\": \"default\"}}"),
               10000.0, 0);                                                     /* transformers 5 */
    CHECK_NEAR(theta_of("{\"rope_parameters\": {\"rope_theta\": 10000}}"), 10000.0, 0);
    CHECK_NEAR(theta_of("{\"rope_parameters\": \"<delete>\", \"rope_theta\": 10000.0}"), 10000.0, 0);
    CHECK_NEAR(theta_of("{\"rope_parameters\": null, \"rope_theta\": 1000042, \"rope_scaling\": null}"),
               1000042.0, 0);                                        /* Falcon3: an integer */
    CHECK_NEAR(theta_of("{\"rope_parameters\": {\"rope_theta\": 10000.0, \"rope_type\": \"default\"},"
                        " \"rope_theta\": 10000.0}"), 10000.0, 0);              /* both, agreeing */
    CHECK_NEAR(theta_of("{\"rope_parameters\": \"<delete>\"}"), 500000.0, 0);   /* neither */
    CHECK_NEAR(theta_of("{\"rope_parameters\": {\"rope_type\": \"default\"}, \"rope_theta\": 20000.0}"),
               20000.0, 0);
    CHECK_NEAR(theta_of("{\"rope_scaling\": {\"rope_type\": \"default\"}}"), 500000.0, 0);
    CHECK_NEAR(theta_of("{\"rope_interleaved\": false, \"partial_rotary_factor\": 1.0}"), 500000.0, 0);
    CHECK_NEAR(theta_of("{\"rope_parameters\": null, \"rope_scaling\": {\"rope_type\": \"default\","
                        " \"rope_theta\": 10000.0}}"), 10000.0, 0);
    refused("{\"rope_scaling\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}}", "disagrees");
    refused("{\"rope_parameters\": {\"rope_theta\": 10000.0}, \"rope_theta\": 500000.0}", "disagree");
    refused("{\"rope_parameters\": {\"rope_theta\": 0}}", "rope_theta");
    refused("{\"rope_parameters\": \"<delete>\", \"rope_theta\": \"1e4\"}", "rope_theta");
    refused("{\"rope_parameters\": [1]}", "rope_parameters");

    /* RoPE variants the engine does not compute */
    refused("{\"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"llama3\", \"factor\": 8.0,"
            " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
            " \"original_max_position_embeddings\": 8192}}", "llama3");
    refused("{\"rope_parameters\": {\"rope_theta\": 10000.0, \"rope_type\": \"yarn\", \"factor\": 4.0}}",
            "yarn");
    refused("{\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}", "linear");
    refused("{\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}}", "dynamic");
    refused("{\"rope_scaling\": {\"factor\": 2.0}}", "rope_scaling");
    refused("{\"rope_parameters\": {\"full_attention\": {\"rope_theta\": 1e6, \"rope_type\": \"default\"}}}",
            "per layer");
    refused("{\"rope_parameters\": {\"rope_theta\": 1e4, \"partial_rotary_factor\": 0.5}}",
            "partial_rotary_factor");
    refused("{\"partial_rotary_factor\": 0.5}", "partial_rotary_factor");
    refused("{\"rope_interleaved\": true}", "rope_interleaved");

    /* the other keys: read */
    {
        Model m;
        Err err;
        int rc = load_with("{\"rms_norm_eps\": 1e-6, \"max_position_embeddings\": 200, \"eos_token_id\": 300,"
                           " \"bos_token_id\": 317, \"torch_dtype\": \"bfloat16\", \"dtype\": \"<delete>\","
                           " \"head_dim\": null}", &m, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        if (rc == 0) {
            CHECK_NEAR(m.cfg.norm_eps, 1e-6, 1e-12);
            CHECK_EQ_INT(m.cfg.ctx_len, 200);
            CHECK(has_stop(&m, 300));   /* eos as a number */
            CHECK_EQ_INT(m.cfg.bos_id, 317);
            model_free(&m);
        }
        rc = load_with("{\"eos_token_id\": [301, 302], \"dtype\": \"float32\", \"head_dim\": 64,"
                       " \"attention_bias\": false, \"mlp_bias\": false, \"sliding_window\": null,"
                       " \"pretraining_tp\": 1}", &m, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        if (rc == 0) {
            CHECK(has_stop(&m, 301) && has_stop(&m, 302));   /* eos as a list */
            CHECK_EQ_INT(m.cfg.head_dim, 64);
            model_free(&m);
        }
    }
    loads("{\"quantization_config\": {\"quant_method\": \"bitnet\", \"linear_class\": \"bitlinear\","
          " \"quantization_mode\": \"offline\", \"use_rms_norm\": false, \"modules_to_not_convert\": null}}");
    loads("{\"quantization_config\": \"<delete>\"}");
    loads("{\"quantization_config\": {\"quant_method\": \"bitnet\", \"modules_to_not_convert\": [\"lm_head\"]}}");
    refused("{\"quantization_config\": {\"quant_method\": \"bitnet\", \"modules_to_not_convert\":"
            " [\"lm_head\", \"model.layers.0.mlp.down_proj\"]}}", "modules_to_not_convert");

    /* the other keys: refused */
    refused("{\"head_dim\": 32}", "head_dim");
    refused("{\"head_dim\": \"64\"}", "head_dim");
    refused("{\"attention_bias\": true}", "attention_bias");
    refused("{\"mlp_bias\": true}", "mlp_bias");
    refused("{\"sliding_window\": 4096}", "sliding_window");
    refused("{\"hidden_act\": \"gelu_pytorch_tanh\"}", "hidden_act");
    refused("{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}}", "quant_method");
    refused("{\"quantization_config\": {\"quant_method\": \"bitnet\", \"linear_class\": \"fancylinear\"}}",
            "linear_class");
    refused("{\"quantization_config\": {\"quant_method\": \"bitnet\", \"quantization_mode\": \"qat\"}}",
            "quantization_mode");
    refused("{\"quantization_config\": {\"quant_method\": \"bitnet\", \"use_rms_norm\": true}}",
            "use_rms_norm");

    json_decref(g_base);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    CHECK(system(cmd) == 0);
    return check_report("test_hf_config");
}
