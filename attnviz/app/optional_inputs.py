"""Optional trailing inputs for raw HTTP clients.

gradio_client fills an event's inputs that the caller left out with their defaults, but a raw
``POST /gradio_api/call/<api_name>`` with fewer values than the event has inputs is refused
("didn't receive enough input values"). The analysis events gained optional inputs at their end
(target, layer, mask, box); :func:`install` lets a request leave out up to that many trailing
values, which then arrive as None (blank: the prediction, the default layer, no mask), so a request
written before they existed is answered as before. Only the events in :data:`OPTIONAL_TAIL`,
only at the end, and never more than their count."""
from __future__ import annotations

# api_name -> how many trailing inputs may be left out
OPTIONAL_TAIL = {"inspect": 4, "inspect_ui": 4, "inspect_auto": 4, "inspect_on_load": 4,
                 "compare": 2}


def install(demo, optional: dict | None = None) -> None:
    """Pad the values of a request to an event of ``optional`` (default :data:`OPTIONAL_TAIL`)
    that left out some of its trailing inputs with None, before Gradio checks the count."""
    optional = dict(OPTIONAL_TAIL if optional is None else optional)
    check = demo.validate_inputs

    def validate_inputs(block_fn, inputs):
        tail = optional.get(getattr(block_fn, "api_name", None), 0)
        missing = len(block_fn.inputs) - len(inputs) if isinstance(inputs, list) else 0
        if 0 < missing <= tail:
            inputs.extend([None] * missing)  # the list Gradio goes on to preprocess
        return check(block_fn, inputs)

    demo.validate_inputs = validate_inputs
