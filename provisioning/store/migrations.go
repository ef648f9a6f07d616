package store

// migrations is the schema, one step per entry, shared by SQLite and PostgreSQL: only types and
// statements both understand (TEXT, BIGINT, INTEGER, DOUBLE PRECISION; times are Unix
// milliseconds). A step is applied once, in a transaction, and recorded in schema_migrations.
// Never edit a released step: add a new one.
var migrations = []string{
	// 1: the fleet registry.
	`CREATE TABLE fleet_groups (
		name       TEXT PRIMARY KEY,
		config     TEXT NOT NULL,
		updated_at BIGINT NOT NULL,
		updated_by TEXT NOT NULL
	);
	CREATE TABLE claim_tokens (
		id               TEXT PRIMARY KEY,
		hash             TEXT NOT NULL UNIQUE,
		group_name       TEXT NOT NULL,
		max_uses         INTEGER NOT NULL,
		uses             INTEGER NOT NULL DEFAULT 0,
		expires_at       BIGINT NOT NULL,
		require_approval INTEGER NOT NULL DEFAULT 0,
		note             TEXT NOT NULL DEFAULT '',
		created_by       TEXT NOT NULL,
		created_at       BIGINT NOT NULL
	);
	CREATE TABLE devices (
		id               TEXT PRIMARY KEY,
		serial           TEXT NOT NULL,
		board            TEXT NOT NULL,
		macs             TEXT NOT NULL,
		group_name       TEXT NOT NULL,
		status           TEXT NOT NULL,
		claim_id         TEXT NOT NULL,
		cert_serial      TEXT NOT NULL UNIQUE,
		cert_pem         TEXT NOT NULL,
		enrolled_at      BIGINT NOT NULL,
		last_seen        BIGINT NOT NULL DEFAULT 0,
		bundle_version   BIGINT NOT NULL DEFAULT 0,
		bundle           TEXT NOT NULL DEFAULT '',
		applied_version  BIGINT NOT NULL DEFAULT 0,
		agent_version    TEXT NOT NULL DEFAULT '',
		firmware_version TEXT NOT NULL DEFAULT '',
		health           TEXT NOT NULL DEFAULT '',
		camera           TEXT NOT NULL DEFAULT '',
		encoder          TEXT NOT NULL DEFAULT '',
		uptime_seconds   DOUBLE PRECISION NOT NULL DEFAULT 0,
		last_error       TEXT NOT NULL DEFAULT '',
		override         TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX devices_group ON devices (group_name);
	CREATE TABLE revoked_certs (
		serial     TEXT PRIMARY KEY,
		device_id  TEXT NOT NULL,
		revoked_at BIGINT NOT NULL
	);
	CREATE TABLE audit_log (
		id     TEXT PRIMARY KEY,
		at     BIGINT NOT NULL,
		actor  TEXT NOT NULL,
		action TEXT NOT NULL,
		target TEXT NOT NULL,
		detail TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX audit_log_at ON audit_log (at);`,
	// 2: certificate renewal keeps the previous certificate working until the device has the
	// new one (its answer may be lost on the way).
	`ALTER TABLE devices ADD COLUMN prev_cert_serial TEXT NOT NULL DEFAULT ''`,
}
