#!/usr/bin/env python3
"""Chat-template fixtures with the structure of the published templates (written here, not
copied), and what transformers' Jinja settings render from them, for test_families.

  falcon3.jinja  Falcon3-*-Instruct (and the -1.58bit repos, whose tokenizer files were aligned
                 with it): an `if tools` branch that opens a system block about <tool_call> use,
                 else one marker per role (<|system|>, <|user|>, <|assistant|>) followed by a
                 newline and the untrimmed content; a user or system turn ends with a newline,
                 an assistant turn with eos_token and a newline unless it is the last message;
                 the generation prompt <|assistant|> + newline is written inside the loop at its
                 last message; no bos_token anywhere.
  llama3.jinja   Meta-Llama-3-8B-Instruct's (the tokenizer_config.json HF1BitLLM ships has its
                 size): header tokens around the role, two newlines, the trimmed content and
                 <|eot_id|>; bos_token prepended to the first message only.
  phi3.jinja     the same role markers closed by <|end|> (not Falcon3's).
  glmedge.jinja  the same role markers with no end of turn at all (not Falcon3's).
  phi4.jinja     <|im_start|>role<|im_sep|> (not ChatML).
The .txt beside each renders CONVERSATION (make_families.py's) with add_generation_prompt,
bos "<|begin_of_text|>" and eos "<|endoftext|>".

Run: python3 make_templates.py (needs jinja2)."""
import os

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))

TEMPLATES = {
    "falcon3": (
        "{%- if tools %}\n"
        "{{- '<|system|>\\n' }}\n"
        "{%- set head = messages[0] if messages[0]['role'] == 'system' else none %}\n"
        "{%- if head %}{{- head['content'] }}{% endif %}\n"
        "{{- 'Answer with <tool_call>[calls]</tool_call> when a tool helps.\\n<tools>' + tools|tojson + '</tools>\\n' }}\n"
        "{%- for m in messages if m['role'] != 'system' %}\n"
        "{{- '<|' + m['role'] + '|>\\n' + m['content'] + (eos_token if m['role'] == 'assistant' else '') + '\\n' }}\n"
        "{%- endfor %}\n"
        "{{- '<|assistant|>\\n' if add_generation_prompt }}\n"
        "{%- else %}\n"
        "{%- for m in messages %}\n"
        "{%- set tail = '' if (loop.last and m['role'] == 'assistant') else '\\n' %}\n"
        "{%- if m['role'] == 'assistant' %}\n"
        "{{- '<|assistant|>\\n' + m['content'] + eos_token + tail }}\n"
        "{%- elif m['role'] in ['system', 'user'] %}\n"
        "{{- '<|' + m['role'] + '|>\\n' + m['content'] + tail }}\n"
        "{%- endif %}\n"
        "{%- if loop.last and add_generation_prompt %}{{- '<|assistant|>\\n' }}{% endif %}\n"
        "{%- endfor %}\n"
        "{%- endif %}"
    ),
    "llama3": (
        "{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
        "{{ '<|start_header_id|>' ~ m['role'] ~ '<|end_header_id|>\\n\\n' ~ (m['content'] | trim) ~ '<|eot_id|>' }}"
        "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "phi3": (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
    "glmedge": (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endfor %}<|assistant|>"
    ),
    "phi4": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}<|im_sep|>{{ m['content'] }}<|im_end|>{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant<|im_sep|>{% endif %}"
    ),
}

CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is a ternary weight?"},
    {"role": "assistant", "content": "One of -1, 0 or +1, times a scale."},
    {"role": "user", "content": "And the activations?"},
]


def main():
    # transformers renders chat templates with these settings
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, **kw: __import__("json").dumps(x)
    for name, src in TEMPLATES.items():
        out = env.from_string(src).render(messages=CONVERSATION, add_generation_prompt=True,
                                          bos_token="<|begin_of_text|>", eos_token="<|endoftext|>",
                                          tools=None)
        with open(os.path.join(HERE, name + ".jinja"), "w") as f:
            f.write(src)
        with open(os.path.join(HERE, name + ".txt"), "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
