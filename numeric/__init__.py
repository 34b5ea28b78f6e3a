"""modeq.numeric: high-precision iterates, flow integration, order-of-accuracy studies, torch."""
