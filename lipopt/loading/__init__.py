"""Model loading through one graph IR: front ends (:mod:`.torch_front`, :mod:`.onnx_front`) turn a
model into an :class:`~lipopt.loading.ir.Graph`, :func:`~lipopt.loading.lower.lower` turns the graph
into the blocks of a :class:`~lipopt.network.Network`. The entry point is
:func:`lipopt.loaders.load_network`.
"""
