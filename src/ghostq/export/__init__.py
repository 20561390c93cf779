"""Export (DESIGN §6): TensorRT-ready ONNX (FP32, FP16, INT8 Q/DQ + a u8s8 CPU form), the LogitClip fused into
the head, optional in-graph NMS, verification against PyTorch, a TensorRT Q/DQ lint, TensorRT engine builds.

Modules: ``onnx_export`` (the head is ``detect.models.inference_head``, built from the model spec), ``nms_graph``,
``qdq_export``, ``scale_groups`` / ``scale_groups_trace``, ``qdq_lint`` and ``explain`` (no torch), ``ghost_source``,
``verify``, ``trtexec``, ``tensorrt_build``, ``checkpoint_export`` (a checkpoint alone), ``pipeline`` (the library
the export stage calls); the config section is ``ghostq.core.export_config``.
Nothing is imported here, so ``import ghostq.export.qdq_lint`` stays light.
"""
