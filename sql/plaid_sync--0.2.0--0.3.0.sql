-- plaid_sync 0.2.0 -> 0.3.0, run by ALTER EXTENSION plaid_sync UPDATE. Hand-written; once 0.3.0
-- is released (RELEASES) this file is frozen: later changes go into a new script.
-- Every change leaves the catalog as a fresh 0.3.0 install has it (tests/upgrade compares).

-- A webhook's replay window is measured from the clock at receipt, not from the start of the
-- caller's transaction (which can be held open).
ALTER TABLE plaid_sync.inbox ALTER COLUMN received_at SET DEFAULT clock_timestamp();

-- Jobs run by plaid_process_inbox behave as on the workers, whatever the caller's session set.
ALTER FUNCTION plaid_sync.plaid_process_inbox(integer)
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC'
    SET extra_float_digits = 1 SET bytea_output = 'hex';
