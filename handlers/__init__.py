"""The front doors (webhooks, REST): they turn outside requests into engine calls, nothing more."""
