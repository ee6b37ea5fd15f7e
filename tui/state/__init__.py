"""The dashboard's Textual-free models: what it knows, how rows read, what it says."""
