"""The TensorRT-LLM request interface, written once: tensors, requests, responses, errors.

Every model Cumulus serves speaks TensorRT-LLM's ``tensorrt_llm`` interface over Triton's KServe v2
protocol. ``interface`` names its tensors (dtype, shape, optional); ``tensors`` builds requests and
parses responses on the protos; ``errors`` turns Triton's failures into cumulus errors. The gateway,
the inference host (which serves the interface) and the judge's LLM-judge client all use it.
"""
