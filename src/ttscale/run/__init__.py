"""Running studies: the runner, its scheduler, records, Ray, plan calibration, and solving one
problem (``ttscale.solve``)."""
