"""Pure domain: values, state machines and rules. No I/O, no SQL, no asyncio."""
