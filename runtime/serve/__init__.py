"""`mmedge serve`: an OpenAI-compatible HTTP server over one bundle (starlette + uvicorn, the
`serve` extra). One generation worker thread owns the Pipeline; requests wait in a FIFO queue."""
