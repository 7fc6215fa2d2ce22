"""Remote text backends: any OpenAI-compatible server (mlx_lm.server, llama.cpp, vLLM, Ollama...)
as the model. Nothing here imports httpx until a request is made."""
