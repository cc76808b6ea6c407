-- ANGEL Flow Meter: the PostgreSQL schema (issue 5).
--
-- Create or upgrade with `angelctl db-init -c FILE` (it runs this text in one transaction), or
-- with `psql -v ON_ERROR_STOP=1 -1 -f db/schema.sql`. Every statement is idempotent: running it
-- again on a database at this version changes nothing; on an older version it adds what is
-- missing. angel.schema_version says which version is installed.
--
-- Configuration: one angel.meter_config row per meter (meter_id = database.meter_id, default the
-- instance name). A NULL column means "not set here": the meter's local file applies. Rows of
-- angel.customer_networks for a meter replace the file's customers.networks; no row = the file's
-- list. Any committed change NOTIFYs channel angel_config (payload: the meter_id, empty for a
-- TRUNCATE), which angel-ctld LISTENs on.
--
-- Flows: angel.flows holds the live flows of each meter, keyed by (meter_id, flow_id) (a flow ID is
-- unique among a meter's live flows, reused once the flow ended). src/sport is the side that sent
-- the flow's first packet. When a flow ends the row moves to angel.flow_history (database.history
-- = true) with the end reason, last-seen time and the packet and byte counters, so a late lookup
-- of a flow ID (with a time) still resolves. A history row whose end_reason is NULL was removed
-- when angel-ctld reconciled the table with its live flows after a database outage and its end
-- was never seen (the event ring overflowed).
--
-- Version 2 (issue 11, item 5): angel.flow_control, the classifier's feedback per live flow:
-- action 'mute' (no more packet records for the flow; its flow_end still comes) or 'full'
-- (every packet record, whatever export.packet_records_per_flow says). Written by the
-- classifier; a committed change NOTIFYs channel angel_flow_control (payload: the meter_id),
-- which angel-ctld LISTENs on and applies within a second. A row applies to the flow that had
-- the ID when the meter took the row up, not to a later flow reusing the ID; the master removes
-- the rows of flows that ended. At most 65536 rows per meter are applied (the oldest first).

CREATE SCHEMA IF NOT EXISTS angel;

CREATE TABLE IF NOT EXISTS angel.schema_version (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS angel.meter_config (
    meter_id        text PRIMARY KEY,
    classifier_host text,
    classifier_port integer CHECK (classifier_port BETWEEN 1 AND 65535),
    flow_timeout    integer CHECK (flow_timeout > 0),
    capture_snaplen integer CHECK (capture_snaplen BETWEEN 64 AND 65535),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS angel.customer_networks (
    meter_id text NOT NULL,
    network  cidr NOT NULL,
    PRIMARY KEY (meter_id, network)
);

-- angel.flows is logged, not UNLOGGED, although angel-ctld rebuilds it from its FlowMap after
-- every (re)connect: a server crash empties an unlogged table, and the flow_end events that
-- waited in the meter's event ring meanwhile would find no row, so the history rows of flows
-- that ended during the outage would be lost (an end event does not carry the addresses). For
-- the writer UNLOGGED saved little (issue 13: 50,000 new flows 79-80 ms instead of 89-112 ms,
-- the move of 50,000 ended flows within the noise).
CREATE TABLE IF NOT EXISTS angel.flows (
    meter_id   text NOT NULL,
    flow_id    bigint NOT NULL,           -- the 32-bit flow ID (unsigned)
    ip_version smallint NOT NULL,
    protocol   smallint NOT NULL,
    src_addr   inet NOT NULL,
    src_port   integer NOT NULL,          -- 0 where the protocol has no ports
    dst_addr   inet NOT NULL,
    dst_port   integer NOT NULL,
    first_seen timestamptz NOT NULL,
    PRIMARY KEY (meter_id, flow_id)
);

CREATE TABLE IF NOT EXISTS angel.flow_history (
    meter_id   text NOT NULL,
    flow_id    bigint NOT NULL,
    ip_version smallint NOT NULL,
    protocol   smallint NOT NULL,
    src_addr   inet NOT NULL,
    src_port   integer NOT NULL,
    dst_addr   inet NOT NULL,
    dst_port   integer NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz,
    end_reason text,                      -- idle, tcp_close, end_of_input, shutdown, evicted
    packets    bigint,
    bytes      bigint,
    ended_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, flow_id, first_seen)
);
-- Version 3 (issue 13): ended_at is indexed with BRIN, not a B-tree. Rows are appended in
-- ended_at order (the default now() of the writing transaction), so ranges of heap pages map to
-- ranges of times and BRIN answers `ended_at < X` (retention, recent history) by skipping the
-- rest; it costs next to nothing per inserted row, where the B-tree was one of the writer's
-- three index inserts per ended flow (bench/db: moving 50,000 ended flows 306-329 ms -> 258-266
-- ms). Upgrading drops the B-tree.
DROP INDEX IF EXISTS angel.flow_history_ended_at;
CREATE INDEX IF NOT EXISTS flow_history_ended_brin ON angel.flow_history USING brin (ended_at);

CREATE OR REPLACE FUNCTION angel.notify_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('angel_config', OLD.meter_id);
        ELSE
            PERFORM pg_notify('angel_config', NEW.meter_id);
            IF TG_OP = 'UPDATE' AND OLD.meter_id IS DISTINCT FROM NEW.meter_id THEN
                PERFORM pg_notify('angel_config', OLD.meter_id);
            END IF;
        END IF;
    ELSE
        PERFORM pg_notify('angel_config', '');
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS meter_config_notify ON angel.meter_config;
CREATE TRIGGER meter_config_notify AFTER INSERT OR UPDATE OR DELETE ON angel.meter_config
    FOR EACH ROW EXECUTE FUNCTION angel.notify_config();
DROP TRIGGER IF EXISTS meter_config_notify_truncate ON angel.meter_config;
CREATE TRIGGER meter_config_notify_truncate AFTER TRUNCATE ON angel.meter_config
    FOR EACH STATEMENT EXECUTE FUNCTION angel.notify_config();
DROP TRIGGER IF EXISTS customer_networks_notify ON angel.customer_networks;
CREATE TRIGGER customer_networks_notify AFTER INSERT OR UPDATE OR DELETE ON angel.customer_networks
    FOR EACH ROW EXECUTE FUNCTION angel.notify_config();
DROP TRIGGER IF EXISTS customer_networks_notify_truncate ON angel.customer_networks;
CREATE TRIGGER customer_networks_notify_truncate AFTER TRUNCATE ON angel.customer_networks
    FOR EACH STATEMENT EXECUTE FUNCTION angel.notify_config();

CREATE TABLE IF NOT EXISTS angel.flow_control (
    meter_id text NOT NULL,
    flow_id  bigint NOT NULL CHECK (flow_id BETWEEN 0 AND 4294967295),
    action   text NOT NULL CHECK (action IN ('mute', 'full')),
    set_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, flow_id)
);

CREATE OR REPLACE FUNCTION angel.notify_flow_control() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('angel_flow_control', OLD.meter_id);
        ELSE
            PERFORM pg_notify('angel_flow_control', NEW.meter_id);
            IF TG_OP = 'UPDATE' AND OLD.meter_id IS DISTINCT FROM NEW.meter_id THEN
                PERFORM pg_notify('angel_flow_control', OLD.meter_id);
            END IF;
        END IF;
    ELSE
        PERFORM pg_notify('angel_flow_control', '');
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS flow_control_notify ON angel.flow_control;
CREATE TRIGGER flow_control_notify AFTER INSERT OR UPDATE OR DELETE ON angel.flow_control
    FOR EACH ROW EXECUTE FUNCTION angel.notify_flow_control();
DROP TRIGGER IF EXISTS flow_control_notify_truncate ON angel.flow_control;
CREATE TRIGGER flow_control_notify_truncate AFTER TRUNCATE ON angel.flow_control
    FOR EACH STATEMENT EXECUTE FUNCTION angel.notify_flow_control();

INSERT INTO angel.schema_version (version) VALUES (1) ON CONFLICT (version) DO NOTHING;
INSERT INTO angel.schema_version (version) VALUES (2) ON CONFLICT (version) DO NOTHING;
INSERT INTO angel.schema_version (version) VALUES (3) ON CONFLICT (version) DO NOTHING;
