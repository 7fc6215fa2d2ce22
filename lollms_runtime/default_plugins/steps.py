"""The built-in step kinds: generate, condition, post_process, text_to_image, reply, set, loop,
for_each and call. Each is registered with its schema fragment and a complete example."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..contracts import StepKind
from ..plugins import hookimpl
from ..schema import base_schema


def _runner(name: str) -> Callable[..., Any]:
    """The runner ``name`` from :mod:`.step_runners`, imported on first use.

    Registering the built-in kinds must stay cheap: `lollms list` and `lollms validate` load this
    plugin but never run a step, so they should not pay for the engine and Jinja2.
    """

    def run(ctx: Any, body: Any) -> Any:
        from . import step_runners

        return getattr(step_runners, name)(ctx, body)

    run.__name__ = run.__qualname__ = name
    return run


STEPS: dict[str, Any] = {"$ref": "#/$defs/steps"}
TEMPLATE = {"type": "string", "description": "Jinja2 template."}
EXPRESSION = {
    "type": "string",
    "minLength": 1,
    "description": "Jinja2 expression, e.g. settings.paint",
}


def _templated(
    kind: str, minimum: float | None = None, maximum: float | None = None, description: str = ""
) -> dict[str, Any]:
    """A number that may also be written as a template such as "{{ settings.steps }}"."""
    spec: dict[str, Any] = {"type": [kind, "string"], "description": description}
    if minimum is not None:
        spec["minimum"] = minimum
    if maximum is not None:
        spec["maximum"] = maximum
    return spec


# A step may override the personality's sampling: the same bounds as the schema's ``sampling``
# (stated there once), but each number may also be written as a template.
STEP_SAMPLING = {
    "temperature": "Randomness for this step (0 = greedy).",
    "top_k": "Top-k for this step.",
    "top_p": "Top-p for this step.",
    "min_p": "Min-p for this step.",
    "repetition_penalty": "Repetition penalty for this step.",
    "max_tokens": "Most tokens this step generates.",
    "seed": "Seed for this step.",
}
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _sampling_overrides() -> dict[str, Any]:
    props = base_schema()["$defs"]["sampling"]["properties"]
    overrides: dict[str, Any] = {}
    for name, description in STEP_SAMPLING.items():
        spec = props[name]
        overrides[name] = {
            "type": [spec["type"], "string"],
            "description": description,
            **{key: spec[key] for key in BOUNDS if key in spec},
        }
    overrides["stop"] = {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "description": "Stop strings for this step (added to the personality's).",
    }
    return overrides


SAMPLING_OVERRIDES = _sampling_overrides()

GENERATE = StepKind(
    name="generate",
    run=_runner("run_generate"),
    summary="One model call. Without a prompt: the conditioning, the discussion and the user's message.",
    schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "prompt": {
                **TEMPLATE,
                "description": "The user message sent for this call (a template); "
                "default: the user's message.",
            },
            "system": {
                **TEMPLATE,
                "description": "System prompt for this call; default: the conditioning.",
            },
            "history": {
                "type": "boolean",
                "description": "Include the discussion so far (default true).",
            },
            "answer_prefix": {
                **TEMPLATE,
                "description": "Text the answer starts with (kept in the output).",
            },
            "stream": {
                "type": "boolean",
                "description": "Stream tokens to the user (default: only when "
                "the reply shows this output directly).",
            },
            **SAMPLING_OVERRIDES,
        },
    },
    templates=("prompt", "system", "answer_prefix"),
    text_output=True,
    streams=True,
    example="""\
pipeline:
  - generate:
      id: description
      prompt: "Describe an artwork about: {{ message }}"
      temperature: 0.8
      max_tokens: 200
      stop: ["\\n\\n"]
  - reply: {text: "{{ description }}"}
""",
)

BRANCH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "if": EXPRESSION,
        "ask": {
            "type": "string",
            "minLength": 1,
            "description": "A yes/no question the model answers.",
        },
        "then": {**STEPS, "description": "Steps run when this branch is taken."},
    },
    "required": ["then"],
    "oneOf": [{"required": ["if"]}, {"required": ["ask"]}],
}

CONDITION = StepKind(
    name="condition",
    run=_runner("run_condition"),
    summary="Branching: if/elif/else on an expression or a yes/no question the model answers; "
    "switch on a value; choose among options by the model.",
    schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "if": EXPRESSION,
            "ask": {
                "type": "string",
                "minLength": 1,
                "description": "A yes/no question the model answers from its scores (a template).",
            },
            "then": {**STEPS, "description": "Steps run when the condition holds."},
            "elif": {
                "type": "array",
                "items": BRANCH,
                "description": "Further branches, tried in order.",
            },
            "else": {**STEPS, "description": "Steps run when no branch is taken."},
            "switch": {**EXPRESSION, "description": "Expression whose value selects a case."},
            "choose": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 2,
                "uniqueItems": True,
                "description": "Options the model picks one of.",
            },
            "question": {**TEMPLATE, "description": "The question asked for choose (a template)."},
            "cases": {
                "type": "object",
                "additionalProperties": STEPS,
                "description": "Steps run for each value of switch/choose.",
            },
            "default": {**STEPS, "description": "Steps run when no case matches."},
        },
        "oneOf": [
            {
                "required": ["if", "then"],
                "not": {"anyOf": [{"required": ["switch"]}, {"required": ["choose"]}]},
            },
            {
                "required": ["ask", "then"],
                "not": {"anyOf": [{"required": ["switch"]}, {"required": ["choose"]}]},
            },
            {"required": ["switch", "cases"]},
            {"required": ["choose"]},
        ],
    },
    templates=("ask", "question"),
    expressions=("if", "switch"),
    nested=("then", "else", "elif", "cases", "default"),
    branches=True,
    example="""\
pipeline:
  - condition:
      id: wants_picture
      ask: "Does the user ask for a picture?"
      then:
        - generate: {id: answer, prompt: "Describe the picture: {{ message }}"}
      elif:
        - if: "message | length < 3"
          then:
            - set: {answer: "Tell me a little more."}
      else:
        - generate: {id: answer}
  - condition:
      id: intent
      choose: [translate, summarize, chat]
      question: "What does the user want?"
      cases:
        translate: [{set: {mode: "translation"}}]
        summarize: [{set: {mode: "summary"}}]
      default: [{set: {mode: "chat"}}]
  - reply: {text: "{{ answer }} ({{ mode }})"}
""",
)

POST_PROCESS = StepKind(
    name="post_process",
    run=_runner("run_post_process"),
    summary="A chain of operations on text (strip, regex, first paragraph, extract JSON, ...).",
    schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["ops"],
        "properties": {
            "input": {
                **TEMPLATE,
                "description": "The text to process; default: the previous step's output.",
            },
            "ops": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/$defs/operation"},
                "description": "Operations applied in order.",
            },
        },
    },
    templates=("input",),
    output_from=("input",),
    operations="ops",
    text_output=True,
    example="""\
pipeline:
  - generate: {id: draft}
  - post_process:
      id: answer
      input: "{{ draft }}"
      ops:
        - strip
        - remove_prefix: "Assistant:"
        - first_paragraph
        - truncate_sentence: 400
  - reply: {text: "{{ answer }}"}
""",
)

TEXT_TO_IMAGE = StepKind(
    name="text_to_image",
    notice="Not painted",
    painter=("backend", "model"),
    run=_runner("run_text_to_image"),
    summary="Paint images from a prompt with an image backend.",
    schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["prompt"],
        "properties": {
            "prompt": {**TEMPLATE, "description": "What to paint (a template)."},
            "negative_prompt": {**TEMPLATE, "description": "What to avoid."},
            "width": _templated("integer", 64, 2048, "Width in pixels (a multiple of 8)."),
            "height": _templated("integer", 64, 2048, "Height in pixels (a multiple of 8)."),
            "steps": _templated("integer", 1, 150, "Denoising steps."),
            "guidance": _templated("number", 0, 30, "Classifier-free guidance scale."),
            "seed": _templated("integer", 0, None, "Seed (same seed, same image)."),
            "count": _templated("integer", 1, 8, "How many images."),
            "backend": {**TEMPLATE, "description": "Image backend name (see `lollms plugins`)."},
            "model": {**TEMPLATE, "description": "Image model (Hugging Face id or folder)."},
        },
    },
    templates=("prompt", "negative_prompt", "backend", "model"),
    example="""\
settings:
  paint: {type: boolean, default: true, title: Paint the description}
pipeline:
  - generate: {id: description}
  - condition:
      if: settings.paint
      then:
        - text_to_image:
            id: artwork
            prompt: "{{ description }}"
            negative_prompt: "blurry, text"
            width: 512
            height: 512
            steps: 20
            on_error: continue
  - reply: {text: "{{ description }}", images: ["{{ artwork }}"]}
""",
)

REPLY = StepKind(
    name="reply",
    quiet=True,
    run=_runner("run_reply"),
    summary="What the user sees: text, images, and which step outputs the trace shows.",
    schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "text": {
                **TEMPLATE,
                "description": "The answer (a template); default: the last text output.",
            },
            "images": {
                "type": "array",
                "items": TEMPLATE,
                "description": "Images to show (step ids of text_to_image outputs, as templates).",
            },
            "show": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Step ids whose outputs the trace shows.",
            },
        },
    },
    templates=("text", "images"),
    answer="text",
    example="""\
pipeline:
  - generate: {id: answer}
  - reply:
      text: "{{ answer }}"
      show: [answer]
""",
)


def _set_defines(body: Mapping[str, Any]) -> dict[str, str]:
    """set defines its keys, each made from its value (a template or a plain value)."""
    return {str(name): str(value) for name, value in body.items()}


def _for_each_scope(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The steps of a for_each see the current item (``as``, default item) and loop_index."""
    return (str(body.get("as", "item")), "loop_index")


SET = StepKind(
    name="set",
    quiet=True,
    run=_runner("run_set"),
    summary="Set variables (values or templates) for later steps.",
    schema={
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "additionalProperties": True,
    },
    common=False,
    defines=_set_defines,
    example="""\
pipeline:
  - set:
      topic: "{{ message | lower }}"
      attempts: 0
  - generate: {id: answer, prompt: "Write one sentence about {{ topic }}."}
  - reply: {text: "{{ answer }}"}
""",
)

LOOP = StepKind(
    name="loop",
    run=_runner("run_loop"),
    summary="Repeat steps while an expression holds, at most max times.",
    schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["steps"],
        "properties": {
            "while": EXPRESSION,
            "max": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "description": "Hard cap on iterations (default 5).",
            },
            "steps": {**STEPS, "description": "Steps run on each iteration."},
        },
    },
    expressions=("while",),
    nested=("steps",),
    after_nested=("while",),
    example="""\
pipeline:
  - set: {draft: ""}
  - loop:
      id: refine
      while: "draft | length < 40"
      max: 3
      steps:
        - generate: {id: draft, prompt: "Write a longer sentence than: {{ draft }}"}
  - reply: {text: "{{ draft }}"}
""",
)

FOR_EACH = StepKind(
    name="for_each",
    run=_runner("run_for_each"),
    summary="Run steps once per item of a list (capped); the outputs are collected in a list.",
    schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["items", "steps"],
        "properties": {
            "items": {**EXPRESSION, "description": "Expression giving a list."},
            "as": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "description": "Name of the current item (default: item).",
            },
            "max": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "description": "Hard cap on iterations (default 10).",
            },
            "steps": {**STEPS, "description": "Steps run for each item."},
        },
    },
    expressions=("items",),
    nested=("steps",),
    scope=_for_each_scope,
    example="""\
pipeline:
  - for_each:
      id: haikus
      items: "['spring', 'winter']"
      as: season
      steps:
        - generate: {id: haiku, prompt: "A haiku about {{ season }}.", max_tokens: 40}
  - reply: {text: "{{ haikus | join('\\n\\n') }}"}
""",
)

CALL = StepKind(
    name="call",
    run=_runner("run_call"),
    summary="Run a named sub-pipeline of this file, or another personality, and use its reply.",
    schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "pipeline": {
                "type": "string",
                "description": "Name of a sub-pipeline under pipelines:.",
            },
            "personality": {
                "type": "string",
                "description": "Id of another installed personality.",
            },
            "message": {
                **TEMPLATE,
                "description": "Message passed to it (default: the user's message).",
            },
        },
        "oneOf": [{"required": ["pipeline"]}, {"required": ["personality"]}],
    },
    templates=("message",),
    text_output=True,
    pipeline_ref="pipeline",
    example="""\
pipelines:
  shout:
    - generate: {id: loud, prompt: "Repeat in capitals: {{ message }}"}
    - reply: {text: "{{ loud }}"}
pipeline:
  - call: {id: shouted, pipeline: shout}
  - reply: {text: "{{ shouted }}"}
""",
)

# Continuing an answer: one generate that picks up where the answer stopped. The message and the
# answer so far are variables, so braces in them stay literal text.
CONTINUE_PIPELINE: tuple[Mapping[str, Any], ...] = (
    {
        "generate": {
            "id": "answer",
            "prompt": "{{ continue_message }}",
            "answer_prefix": "{{ continue_text }}",
        }
    },
    {"reply": {"text": "{{ answer }}"}},
)

BUILTIN_STEP_KINDS = (
    GENERATE,
    CONDITION,
    POST_PROCESS,
    TEXT_TO_IMAGE,
    REPLY,
    SET,
    LOOP,
    FOR_EACH,
    CALL,
)


@hookimpl
def register_step_kinds(register: Any) -> None:
    for kind in BUILTIN_STEP_KINDS:
        register(kind)
