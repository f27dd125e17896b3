"""The real systems' own API descriptions that the doubles check requests against (README.md)."""
