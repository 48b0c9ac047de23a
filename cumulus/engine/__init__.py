"""The CPU inference engine, a library: the model host, the trainer's offline gate and bench/ use it.

- :mod:`~cumulus.engine.backend`: ``GenerationEngine``, batched token-by-token generation.
- :mod:`~cumulus.engine.attention`: the decode-step attention it uses.
- :mod:`~cumulus.engine.multilora`: ``MultiLora``, mixed LoRA adapters in one forward pass.
- :mod:`~cumulus.engine.adapter_cache`: ``AdapterCache``, the LoRA side of the TensorRT-LLM protocol.
"""
