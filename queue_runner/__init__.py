"""queue_runner: drives the build from BACKEND_EXECUTION_QUEUE.md through nox gates.

The pipeline is parse → select → gate → edit → report; each stage is its own module and
only `gates` starts processes or `edit` writes files. Heavy imports (rich, subprocess,
tempfile) stay inside the functions that need them so `queue-runner status` starts fast."""
