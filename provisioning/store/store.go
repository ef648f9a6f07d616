// Package store is the fleet registry in a real database: SQLite (modernc.org/sqlite, pure Go)
// as the embedded default and PostgreSQL (pgx) for larger fleets, with one schema and one set of
// migrations for both.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	_ "modernc.org/sqlite"             // driver "sqlite"

	"github.com/edgeflux/edge/provisioning/api"
)

// DB is the fleet registry.
type DB struct {
	db       *sql.DB
	postgres bool
}

// Open opens (and migrates) the registry at dsn: "sqlite:PATH" (or a path ending in .db) for
// SQLite, "postgres://…" or "postgresql://…" for PostgreSQL.
func Open(ctx context.Context, dsn string) (*DB, error) {
	s := &DB{}
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.postgres = true
		s.db, err = sql.Open("pgx", dsn)
		if err == nil {
			s.db.SetMaxOpenConns(16)
		}
	default:
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, fmt.Errorf("open registry: empty SQLite path")
		}
		// One connection: SQLite has one writer anyway, and this turns SQLITE_BUSY into
		// queueing in database/sql. WAL lets readers of other processes (backups) in.
		s.db, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
		if err == nil {
			s.db.SetMaxOpenConns(1)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("open registry: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// Dialect names the database: "sqlite" or "postgres".
func (s *DB) Dialect() string {
	if s.postgres {
		return "postgres"
	}
	return "sqlite"
}

// Close closes the database.
func (s *DB) Close() error { return s.db.Close() }

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *DB) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *DB) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (s *DB) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if s.postgres {
				// Two provisiond starting at once against one database take turns.
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7001)`); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range strings.Split(m, ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), version, ms(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate to schema %d: %w", version, err)
		}
	}
	return nil
}

// SchemaVersion is the newest migration applied.
func (s *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v)
	return int(v.Int64), err
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// NewID returns a random identifier with a prefix, e.g. "clm_3f2a…".
func NewID(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func (s *DB) audit(ctx context.Context, x execer, e api.AuditEntry) error {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	_, err := x.ExecContext(ctx, s.q(`INSERT INTO audit_log (id, at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)`),
		NewID("aud_"), ms(e.At), e.Actor, e.Action, e.Target, e.Detail)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Audit returns the newest limit entries of the audit log, newest first.
func (s *DB) Audit(ctx context.Context, limit int) ([]api.AuditEntry, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT at, actor, action, target, detail FROM audit_log ORDER BY at DESC, id DESC LIMIT ?`), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.AuditEntry
	for rows.Next() {
		var e api.AuditEntry
		var at int64
		if err := rows.Scan(&at, &e.Actor, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Claim tokens.

// CreateClaim stores a new claim token under its hash (the token itself is never stored).
func (s *DB) CreateClaim(ctx context.Context, c api.ClaimToken, hash string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO claim_tokens (id, hash, group_name, max_uses, uses, expires_at, require_approval, note, created_by, created_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)`),
			c.ID, hash, c.Group, c.MaxUses, ms(c.ExpiresAt), b2i(c.RequireApproval), c.Note, c.CreatedBy, ms(c.CreatedAt))
		if err != nil {
			return fmt.Errorf("create claim token: %w", err)
		}
		return s.audit(ctx, tx, api.AuditEntry{At: c.CreatedAt, Actor: c.CreatedBy, Action: "claim.create", Target: c.ID,
			Detail: fmt.Sprintf("group=%s max_uses=%d expires_at=%s approval=%t", c.Group, c.MaxUses, c.ExpiresAt.Format(time.RFC3339), c.RequireApproval)})
	})
}

// Claims lists the claim tokens (never the tokens themselves).
func (s *DB) Claims(ctx context.Context) ([]api.ClaimToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, group_name, max_uses, uses, expires_at, require_approval, note, created_by, created_at FROM claim_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.ClaimToken
	for rows.Next() {
		var c api.ClaimToken
		var exp, created int64
		var appr int
		if err := rows.Scan(&c.ID, &c.Group, &c.MaxUses, &c.Uses, &exp, &appr, &c.Note, &c.CreatedBy, &created); err != nil {
			return nil, err
		}
		c.ExpiresAt, c.CreatedAt, c.RequireApproval = fromMS(exp), fromMS(created), appr != 0
		out = append(out, c)
	}
	return out, rows.Err()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// NewDevice is what enrolment knows about a device before it is stored.
type NewDevice struct {
	ID         string
	Serial     string
	Board      string
	MACs       []string
	CertSerial string
	CertPEM    string
}

// Enrol redeems the claim token with hash tokenHash for d, in one transaction: the token must
// exist, be unexpired and have uses left; its use count goes up by one and the device is stored
// in the token's group (pending if the token requires approval). Any refusal changes nothing.
// A device that enrols again with the same key and the same claim (its answer was lost) gets
// its stored record back without using the token again.
func (s *DB) Enrol(ctx context.Context, tokenHash string, d NewDevice, now time.Time) (api.Device, error) {
	var out api.Device
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var (
			id, group     string
			maxUses, uses int
			exp           int64
			approval      int
		)
		err := tx.QueryRowContext(ctx, s.q(`SELECT id, group_name, max_uses, uses, expires_at, require_approval FROM claim_tokens WHERE hash = ?`), tokenHash).
			Scan(&id, &group, &maxUses, &uses, &exp, &approval)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrClaimUnknown
		} else if err != nil {
			return err
		}
		if existing, err := s.device(ctx, tx, `id = ?`, d.ID); err == nil {
			if existing.Status == api.StatusRevoked {
				return ErrDeviceRevoked
			}
			var claimID string
			if err := tx.QueryRowContext(ctx, s.q(`SELECT claim_id FROM devices WHERE id = ?`), d.ID).Scan(&claimID); err != nil {
				return err
			}
			if claimID == id {
				out = existing
				return nil
			}
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if now.UnixMilli() >= exp {
			return ErrClaimExpired
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE claim_tokens SET uses = uses + 1 WHERE id = ? AND uses < max_uses`), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrClaimUsed
		}
		status := api.StatusActive
		if approval != 0 {
			status = api.StatusPending
		}
		macs, _ := json.Marshal(d.MACs)
		// A device that enrols again with a new claim (re-flashed, same key) replaces its record.
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM devices WHERE id = ?`), d.ID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO devices (id, serial, board, macs, group_name, status, claim_id, cert_serial, cert_pem, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			d.ID, d.Serial, d.Board, string(macs), group, status, id, d.CertSerial, d.CertPEM, ms(now))
		if err != nil {
			return fmt.Errorf("store device: %w", err)
		}
		if err := s.audit(ctx, tx, api.AuditEntry{At: now, Actor: "device:" + d.ID, Action: "device.enrol", Target: d.ID,
			Detail: fmt.Sprintf("claim=%s group=%s serial=%s board=%s status=%s", id, group, d.Serial, d.Board, status)}); err != nil {
			return err
		}
		out, err = s.device(ctx, tx, `id = ?`, d.ID)
		return err
	})
	return out, err
}

// RenewCert gives a device a new certificate. presented is the serial of the certificate the
// request came with: the current one, or the previous one when the device never received the
// answer to its last renewal. The certificate it presented stays valid beside the new one
// until the next renewal, so that a lost answer cannot lock the device out.
func (s *DB) RenewCert(ctx context.Context, id, presented, newSerial, certPEM string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var cur, prev, status string
		err := tx.QueryRowContext(ctx, s.q(`SELECT cert_serial, prev_cert_serial, status FROM devices WHERE id = ?`), id).Scan(&cur, &prev, &status)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if status == api.StatusRevoked {
			return ErrDeviceRevoked
		}
		if presented != cur && presented != prev {
			return ErrConflict
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET cert_serial = ?, cert_pem = ?, prev_cert_serial = ? WHERE id = ?`),
			newSerial, certPEM, presented, id); err != nil {
			return err
		}
		return s.audit(ctx, tx, api.AuditEntry{Actor: "device:" + id, Action: "device.renew", Target: id, Detail: "cert_serial=" + newSerial + " replaces " + presented})
	})
}

// DeviceCert returns a device's stored certificate PEM.
func (s *DB) DeviceCert(ctx context.Context, id string) (string, error) {
	var pem string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT cert_pem FROM devices WHERE id = ?`), id).Scan(&pem)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return pem, err
}

const deviceColumns = `id, serial, board, macs, group_name, status, cert_serial, enrolled_at, last_seen, bundle_version, applied_version, agent_version, firmware_version, health, camera, encoder, uptime_seconds, last_error, override`

func scanDevice(row interface{ Scan(...any) error }) (api.Device, error) {
	var d api.Device
	var macs string
	var enrolled, seen int64
	err := row.Scan(&d.ID, &d.Serial, &d.Board, &macs, &d.Group, &d.Status, &d.CertSerial, &enrolled, &seen, &d.BundleVersion,
		&d.AppliedVersion, &d.AgentVersion, &d.FirmwareVersion, &d.Health, &d.Camera, &d.Encoder, &d.UptimeSeconds, &d.LastError, &d.Override)
	if err != nil {
		return d, err
	}
	json.Unmarshal([]byte(macs), &d.MACs)
	d.EnrolledAt, d.LastSeen = fromMS(enrolled), fromMS(seen)
	return d, nil
}

func (s *DB) device(ctx context.Context, x execer, where string, arg any) (api.Device, error) {
	d, err := scanDevice(x.QueryRowContext(ctx, s.q(`SELECT `+deviceColumns+` FROM devices WHERE `+where), arg))
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrNotFound
	}
	return d, err
}

// Device returns one device.
func (s *DB) Device(ctx context.Context, id string) (api.Device, error) {
	return s.device(ctx, s.db, `id = ?`, id)
}

// DeviceByCert returns the device holding the certificate with this serial (hex), or
// ErrDeviceRevoked if that certificate has been revoked.
func (s *DB) DeviceByCert(ctx context.Context, certSerial string) (api.Device, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM revoked_certs WHERE serial = ?`), certSerial).Scan(&n); err != nil {
		return api.Device{}, err
	}
	if n > 0 {
		return api.Device{}, ErrDeviceRevoked
	}
	d, err := s.device(ctx, s.db, `cert_serial = ?`, certSerial)
	if errors.Is(err, ErrNotFound) {
		d, err = s.device(ctx, s.db, `prev_cert_serial = ? AND prev_cert_serial <> ''`, certSerial)
	}
	return d, err
}

// Devices lists devices, all of them or those of one group.
func (s *DB) Devices(ctx context.Context, group string) ([]api.Device, error) {
	query, args := `SELECT `+deviceColumns+` FROM devices ORDER BY id`, []any{}
	if group != "" {
		query, args = `SELECT `+deviceColumns+` FROM devices WHERE group_name = ? ORDER BY id`, []any{group}
	}
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Heartbeat records what a device reported and when.
func (s *DB) Heartbeat(ctx context.Context, id string, hb api.Heartbeat, now time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE devices SET last_seen = ?, applied_version = ?, agent_version = ?, firmware_version = ?, health = ?, camera = ?, encoder = ?, uptime_seconds = ?, last_error = ? WHERE id = ?`),
		ms(now), int64(hb.ConfigVersion), hb.AgentVersion, hb.FirmwareVersion, hb.Health, hb.Camera, hb.Encoder, hb.UptimeSeconds, hb.LastError, id)
	return err
}

// Seen records that a device asked for its bundle.
func (s *DB) Seen(ctx context.Context, id string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE devices SET last_seen = ? WHERE id = ?`), ms(now), id)
	return err
}

// Bundle returns a device's newest bundle and its version (0 and nil when none was issued).
func (s *DB) Bundle(ctx context.Context, id string) (uint64, []byte, error) {
	var v int64
	var b string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT bundle_version, bundle FROM devices WHERE id = ?`), id).Scan(&v, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, ErrNotFound
	}
	if b == "" {
		return uint64(v), nil, err
	}
	return uint64(v), []byte(b), err
}

// RenderInput is what a device's bundle is made from.
type RenderInput struct {
	Device      api.Device
	GroupConfig string
	HasGroup    bool
}

// UpdateBundle renders and stores the next bundle of a device: render gets the device, its
// group's template and the next version, and returns the signed bundle (or an error, and then
// nothing changes). Versions only go up, even under concurrent updates.
func (s *DB) UpdateBundle(ctx context.Context, id string, render func(in RenderInput, version uint64) ([]byte, error)) (uint64, error) {
	var version uint64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if s.postgres {
			if _, err := tx.ExecContext(ctx, s.q(`SELECT id FROM devices WHERE id = ? FOR UPDATE`), id); err != nil {
				return err
			}
		}
		d, err := s.device(ctx, tx, `id = ?`, id)
		if err != nil {
			return err
		}
		in := RenderInput{Device: d}
		err = tx.QueryRowContext(ctx, s.q(`SELECT config FROM fleet_groups WHERE name = ?`), d.Group).Scan(&in.GroupConfig)
		if err == nil {
			in.HasGroup = true
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Above what the device says it applied too: a device that kept its configuration
		// across a re-enrolment would otherwise refuse the new record's first versions.
		version = max(d.BundleVersion, d.AppliedVersion) + 1
		b, err := render(in, version)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET bundle_version = ?, bundle = ? WHERE id = ? AND bundle_version = ?`), int64(version), string(b), id, int64(d.BundleVersion))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrConflict
		}
		return nil
	})
	return version, err
}

// SetStatus approves (active) a pending device.
func (s *DB) Approve(ctx context.Context, id, actor string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET status = ? WHERE id = ? AND status = ?`), api.StatusActive, id, api.StatusPending)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			d, err := s.device(ctx, tx, `id = ?`, id)
			if err != nil {
				return err
			}
			return fmt.Errorf("device %s is %s, not pending", id, d.Status)
		}
		return s.audit(ctx, tx, api.AuditEntry{Actor: actor, Action: "device.approve", Target: id})
	})
}

// Revoke revokes a device and its certificate: from now on every request with it is refused.
func (s *DB) Revoke(ctx context.Context, id, actor string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		d, err := s.device(ctx, tx, `id = ?`, id)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET status = ? WHERE id = ?`), api.StatusRevoked, id); err != nil {
			return err
		}
		var prev string
		if err := tx.QueryRowContext(ctx, s.q(`SELECT prev_cert_serial FROM devices WHERE id = ?`), id).Scan(&prev); err != nil {
			return err
		}
		for _, serial := range []string{d.CertSerial, prev} {
			if serial == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO revoked_certs (serial, device_id, revoked_at) VALUES (?, ?, ?) ON CONFLICT (serial) DO NOTHING`), serial, id, ms(time.Now())); err != nil {
				return err
			}
		}
		return s.audit(ctx, tx, api.AuditEntry{Actor: actor, Action: "device.revoke", Target: id, Detail: "cert_serial=" + d.CertSerial})
	})
}

// RevokedSerials lists every revoked certificate serial (hex).
func (s *DB) RevokedSerials(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT serial FROM revoked_certs ORDER BY serial`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// SetGroup moves a device to a group.
func (s *DB) SetGroup(ctx context.Context, id, group, actor string) error {
	return s.updateDevice(ctx, id, `group_name = ?`, group, api.AuditEntry{Actor: actor, Action: "device.assign", Target: id, Detail: "group=" + group})
}

// SetOverride sets a device's YAML override ("" clears it).
func (s *DB) SetOverride(ctx context.Context, id, override, actor string) error {
	return s.updateDevice(ctx, id, `override = ?`, override, api.AuditEntry{Actor: actor, Action: "device.override", Target: id, Detail: fmt.Sprintf("%d bytes", len(override))})
}

func (s *DB) updateDevice(ctx context.Context, id, set string, v any, e api.AuditEntry) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET `+set+` WHERE id = ?`), v, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrNotFound
		}
		return s.audit(ctx, tx, e)
	})
}

// PutGroup creates or replaces a group's configuration template.
func (s *DB) PutGroup(ctx context.Context, name, config, actor string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO fleet_groups (name, config, updated_at, updated_by) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at, updated_by = excluded.updated_by`),
			name, config, ms(time.Now()), actor)
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, api.AuditEntry{Actor: actor, Action: "group.put", Target: name, Detail: fmt.Sprintf("%d bytes", len(config))})
	})
}

// Groups lists the groups with their device counts.
func (s *DB) Groups(ctx context.Context) ([]api.Group, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT g.name, g.config, g.updated_at, g.updated_by, (SELECT COUNT(*) FROM devices d WHERE d.group_name = g.name) FROM fleet_groups g ORDER BY g.name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.Group
	for rows.Next() {
		var g api.Group
		var at int64
		if err := rows.Scan(&g.Name, &g.Config, &at, &g.UpdatedBy, &g.Devices); err != nil {
			return nil, err
		}
		g.UpdatedAt = fromMS(at)
		out = append(out, g)
	}
	return out, rows.Err()
}
