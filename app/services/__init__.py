"""Use cases: the one implementation that the API, the console and the tasks all call."""
