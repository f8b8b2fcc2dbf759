"""Pure logic of micro-moments: rule compiler, pattern engine, CRM clients, vendor payloads."""
