"""Run folders, episode collection and (later) the PlaNet training schedule."""
