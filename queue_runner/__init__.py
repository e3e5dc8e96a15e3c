"""queue_runner: drives the build from BACKEND_EXECUTION_QUEUE.md through nox gates."""
