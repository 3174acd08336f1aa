"""The local demo: what `tfserving-autoscaler demo` runs besides the real daemon loop.

`load` prepares the story (the dilated demo spec and the shaped trace window); `local` is the
stand-in cluster (TF Serving emulator replicas on 127.0.0.1), its actuator, the live view and the
summary. Demo-only code, kept out of `runtime/` (the daemon) and out of the CLI command.
"""
