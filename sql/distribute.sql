-- plaid_sync on a Citus cluster: one call on the coordinator spreads the Item-keyed tables over
-- the Citus workers, by item_id and co-located (one Item's rows on one node, so every
-- statement a sync runs stays on one shard); the shared caches become reference tables
-- (a copy on every node); the queue (inbox, staged pages, paid calls, deliveries) stays
-- where plaid_sync's workers run. README, "Beyond one server".

-- Citus-placed tables in the order they are distributed: items first, as the others
-- reference it and are co-located with it.
CREATE FUNCTION plaid_sync.distributed_tables() RETURNS TABLE (name regclass, placement text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
    SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
    VALUES ('plaid_sync.items'::regclass, 'by item_id'),
           ('plaid_sync.accounts', 'by item_id'),
           ('plaid_sync.balance_snapshots', 'by item_id'),
           ('plaid_sync.transaction_rows', 'by item_id'),
           ('plaid_sync.sync_runs', 'by item_id'),
           ('plaid_sync.sync_rejects', 'by item_id'),
           ('plaid_sync.item_products', 'by item_id'),
           ('plaid_sync.recurring_streams', 'by item_id'),
           ('plaid_sync.liabilities', 'by item_id'),
           ('plaid_sync.holdings', 'by item_id'),
           ('plaid_sync.investment_transactions', 'by item_id'),
           ('plaid_sync.institutions', 'reference'),
           ('plaid_sync.securities', 'reference'),
           ('plaid_sync.webhook_keys', 'reference')
$$;

CREATE FUNCTION plaid_sync.distribute(shard_count integer DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
DECLARE
    t record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'plaid_sync.distribute() needs Citus in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'CREATE EXTENSION citus, add the worker nodes, then call it again.';
    END IF;
    IF shard_count IS NOT NULL AND shard_count NOT BETWEEN 1 AND 64000 THEN
        RAISE EXCEPTION 'shard_count must be between 1 and 64000, not %', shard_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT citus_is_coordinator() THEN
        RAISE EXCEPTION 'plaid_sync.distribute() runs on the Citus coordinator'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'plaid_sync.items'::regclass) THEN
        RAISE NOTICE 'plaid_sync is already distributed';
        RETURN;
    END IF;
    -- Citus would run the trigger on the worker that holds the shard, away from the deliveries
    -- queue and the listeners of NOTIFY: the statements that change an Item send its events
    -- instead (src/store/item_events.rs).
    DROP TRIGGER item_events ON plaid_sync.items;
    -- A local table may not reference a distributed one: paid_calls stays with the queue.
    ALTER TABLE plaid_sync.paid_calls DROP CONSTRAINT IF EXISTS paid_calls_item_id_fkey;
    FOR t IN SELECT * FROM plaid_sync.distributed_tables() LOOP
        IF t.placement = 'reference' THEN
            PERFORM create_reference_table(t.name);
        ELSIF t.name = 'plaid_sync.items'::regclass THEN
            PERFORM create_distributed_table(t.name, 'item_id',
                shard_count => coalesce(shard_count, current_setting('citus.shard_count')::integer));
        ELSE
            PERFORM create_distributed_table(t.name, 'item_id', colocate_with => 'plaid_sync.items');
        END IF;
    END LOOP;
    -- The rows are now in the shards; the coordinator's copies would only take space.
    FOR t IN SELECT * FROM plaid_sync.distributed_tables() LOOP
        PERFORM truncate_local_data_after_distributing_table(t.name);
    END LOOP;
END $$;
