"""Node BullMQ interop: jobs cross between queuekit and Node BullMQ in both directions."""
