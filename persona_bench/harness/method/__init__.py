"""What a method is and what it sees: the Method interface and registry, and the RunContext that
holds train (and revealed) answers only."""
