"""SQL rewrite passes: pure `Expression -> Expression` functions, one module each."""
