"""Pictures of the simulated training step, drawn from its recorded trace (trace.py): a memory
timeline (SVG), a PyTorch memory snapshot and a self-contained HTML report. Imported only when
one is asked for."""
