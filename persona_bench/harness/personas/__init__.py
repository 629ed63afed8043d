"""Persona spaces: collaborative filtering of respondents and questions, persona kinds (individual,
clusters, trait groups), and the persona analysis."""
