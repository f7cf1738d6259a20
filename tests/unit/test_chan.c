/* EventChan: wake-fd semantics, text never lost or split inside a UTF-8 character, coalescing
 * under a slow consumer, stats replacement, and a producer/consumer stress run (run it under
 * TSan: -DBITNET_SANITIZE=thread). */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "infer/chan.h"

static int readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void test_basics(void) {
    Err err;
    EventChan *c = chan_create(64, &err);
    REQUIRE(c);
    EngineEvent ev[64];
    CHECK(!readable(chan_fd(c)));
    CHECK_EQ_INT(chan_pop(c, ev, 64), 0);
    CHECK_EQ_INT(chan_wait(c, ev, 64, 10), 0); /* times out */

    CHECK_EQ_INT(chan_push_text(c, 7, "héllo", strlen("héllo")), strlen("héllo"));
    CHECK(readable(chan_fd(c)));
    EngineEvent st;
    memset(&st, 0, sizeof st);
    st.type = EV_STATS;
    st.req = 7;
    st.u.stats.gen_tokens = 1;
    CHECK_EQ_INT(chan_push_latest(c, &st), 1);
    st.u.stats.gen_tokens = 2; /* replaces the unread tail stats */
    CHECK_EQ_INT(chan_push_latest(c, &st), 1);
    CHECK_EQ_INT(chan_count(c), 2);
    CHECK_EQ_INT(chan_pop(c, ev, 1), 1);
    CHECK(readable(chan_fd(c))); /* one event still waits */
    CHECK_EQ_INT(ev[0].type, EV_TOKEN);
    CHECK_EQ_INT(ev[0].req, 7);
    CHECK_STREQ(ev[0].u.token.text, "héllo");
    CHECK_EQ_INT(chan_pop(c, ev, 64), 1);
    CHECK_EQ_INT(ev[0].type, EV_STATS);
    CHECK_EQ_INT(ev[0].u.stats.gen_tokens, 2);
    CHECK(!readable(chan_fd(c)));

    /* long text is split into events at character boundaries */
    char big[1000];
    int n = 0;
    while (n + 3 < (int)sizeof big - 1) {
        memcpy(big + n, "\xe2\x82\xac", 3); /* euro sign */
        n += 3;
    }
    big[n] = 0;
    CHECK_EQ_INT(chan_push_text(c, 8, big, (size_t)n), n);
    int got = chan_pop(c, ev, 64), total = 0, whole = 1;
    for (int i = 0; i < got; i++) {
        CHECK(ev[i].u.token.len < ENGINE_TOKEN_TEXT);
        whole &= ev[i].u.token.len % 3 == 0 && ev[i].u.token.text[ev[i].u.token.len] == 0;
        total += ev[i].u.token.len;
    }
    CHECK(got > 1);
    CHECK(whole);
    CHECK_EQ_INT(total, n);
    chan_destroy(c);
}

/* A consumer that never reads: text coalesces, the soft limit refuses the rest (the producer
 * keeps it), stats are skipped, and control events still fit in the reserve. */
static void test_full(void) {
    EventChan *c = chan_create(40, NULL);
    REQUIRE(c);
    size_t taken = 0, offered = 0;
    for (int i = 0; i < 2000; i++) {
        taken += chan_push_text(c, 1, "abcdefgh", 8);
        offered += 8;
    }
    CHECK(taken < offered);
    CHECK(chan_count(c) <= 40 - 16);
    EngineEvent st;
    memset(&st, 0, sizeof st);
    st.type = EV_STATS;
    st.req = 1;
    CHECK_EQ_INT(chan_push_latest(c, &st), 0);
    EngineEvent done;
    memset(&done, 0, sizeof done);
    done.type = EV_DONE;
    done.req = 1;
    CHECK_EQ_INT(chan_push_wait(c, &done), 0);
    EngineEvent ev[64];
    int n = chan_pop(c, ev, 64);
    size_t total = 0;
    for (int i = 0; i < n - 1; i++) total += (size_t)ev[i].u.token.len;
    CHECK_EQ_INT(total, taken);
    CHECK_EQ_INT(ev[n - 1].type, EV_DONE);
    /* with half the ring full, text merges into the tail token event */
    CHECK(n - 1 < (int)(taken / 8));
    chan_destroy(c);
}

/* Closing wakes a producer blocked on a full ring. */
static void *closer(void *arg) {
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    chan_close(arg);
    return NULL;
}

static void test_close(void) {
    EventChan *c = chan_create(32, NULL);
    EngineEvent done;
    memset(&done, 0, sizeof done);
    done.type = EV_DONE;
    int rc = 0;
    for (int i = 0; i < 32; i++) rc |= chan_push_wait(c, &done);
    CHECK_EQ_INT(rc, 0);
    pthread_t t;
    pthread_create(&t, NULL, closer, c);
    CHECK_EQ_INT(chan_push_wait(c, &done), -1);
    pthread_join(t, NULL);
    chan_destroy(c);
}

/* Stress: a producer streams numbered text for several requests; a jittery consumer checks that
 * every byte arrives in order, and that each request ends with its EV_DONE. */
enum { STRESS_REQS = 20, STRESS_TOKENS = 3000 };

static void *producer(void *arg) {
    EventChan *c = arg;
    char pending[1 << 16];
    size_t plen = 0;
    for (uint64_t req = 1; req <= STRESS_REQS; req++) {
        for (int i = 0; i < STRESS_TOKENS; i++) {
            char tok[32];
            int n = snprintf(tok, sizeof tok, "%d,", i);
            memcpy(pending + plen, tok, (size_t)n);
            plen += (size_t)n;
            size_t took = chan_push_text(c, req, pending, plen);
            memmove(pending, pending + took, plen - took);
            plen -= took;
            if (i % 100 == 0) {
                EngineEvent st;
                memset(&st, 0, sizeof st);
                st.type = EV_STATS;
                st.req = req;
                st.u.stats.gen_tokens = i;
                chan_push_latest(c, &st);
            }
        }
        if (plen) chan_push_text_wait(c, req, pending, plen);
        plen = 0;
        EngineEvent done;
        memset(&done, 0, sizeof done);
        done.type = EV_DONE;
        done.req = req;
        chan_push_wait(c, &done);
    }
    return NULL;
}

static void test_stress(void) {
    EventChan *c = chan_create(64, NULL);
    pthread_t t;
    pthread_create(&t, NULL, producer, c);
    size_t cap = (size_t)STRESS_TOKENS * 8;
    char *got = malloc(cap), *want = malloc(cap);
    size_t wlen = 0;
    for (int i = 0; i < STRESS_TOKENS; i++) wlen += (size_t)sprintf(want + wlen, "%d,", i);
    uint64_t req = 1;
    size_t glen = 0;
    int ok = 1, spins = 0, merged = 0;
    EngineEvent ev[16];
    while (req <= STRESS_REQS) {
        struct pollfd p = {.fd = chan_fd(c), .events = POLLIN};
        poll(&p, 1, 100);
        int n = chan_pop(c, ev, 1 + (spins++ % 16));
        for (int i = 0; i < n; i++) {
            ok &= ev[i].req == req;
            if (ev[i].type == EV_TOKEN) {
                if (glen + (size_t)ev[i].u.token.len <= cap) {
                    memcpy(got + glen, ev[i].u.token.text, (size_t)ev[i].u.token.len);
                    glen += (size_t)ev[i].u.token.len;
                }
                merged |= ev[i].u.token.len > 6;
            } else if (ev[i].type == EV_DONE) {
                ok &= glen == wlen && memcmp(got, want, wlen) == 0;
                glen = 0;
                req++;
            }
        }
        if (spins % 7 == 0) {
            struct timespec ts = {0, 200000L}; /* a slow UI now and then */
            nanosleep(&ts, NULL);
        }
    }
    pthread_join(t, NULL);
    CHECK(ok);
    CHECK(merged);
    CHECK_EQ_INT(chan_count(c), 0);
    free(got);
    free(want);
    chan_destroy(c);
}

int main(void) {
    test_basics();
    test_full();
    test_close();
    test_stress();
    return check_report("test_chan");
}
