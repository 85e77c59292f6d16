"""The servers: the OpenAI-compatible TTS server and the PRM server."""
