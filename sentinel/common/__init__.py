"""Standard-library helpers every part uses: safe text, value rules, redaction, logging."""
