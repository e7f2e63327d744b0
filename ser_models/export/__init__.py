"""Models out of the platform: an ONNX graph of the audio inference path (:mod:`.onnx_export`) and a predictor
that runs it through ONNX Runtime without torch (:mod:`.onnx_runtime`)."""
