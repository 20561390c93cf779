"""Export (DESIGN §6): TensorRT-ready ONNX (FP32, FP16, INT8 Q/DQ + a u8s8 CPU form), the LogitClip fused into
the head, optional in-graph NMS, verification against PyTorch, a TensorRT Q/DQ lint, TensorRT engine builds.

Modules: ``config`` (ExportConfig, no torch), ``fused_head``, ``onnx_export``, ``nms_graph``, ``qdq_export``,
``qdq_lint`` (no torch), ``ghost_source``, ``verify``, ``trtexec``, ``tensorrt_build``, ``pipeline`` (the stage).
Nothing is imported here, so ``import ghostq.export.qdq_lint`` stays light.
"""
