"""The toy world: a tiny trained text-to-image family shipped with the pack, and a GenEval-style evaluator."""
