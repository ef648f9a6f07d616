package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/store/pgtest"
)

// TestStore runs the same checks on both databases: migrations are applied once (a second
// Open is a no-op), and claim redemption counts uses, refuses exhausted and expired tokens
// without changing anything, and versions only go up.
func TestStore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testStore(t, "sqlite:"+filepath.Join(t.TempDir(), "f.db")) })
	t.Run("postgres", func(t *testing.T) { testStore(t, pgtest.Start(t)) })
}

func testStore(t *testing.T, dsn string) {
	ctx := context.Background()
	db, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(ctx, dsn); err != nil {
		t.Fatalf("second open: %v", err)
	}
	defer db.Close()
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
	}
	now := time.Now()
	c := api.ClaimToken{ID: "clm_1", Group: "lab", MaxUses: 2, ExpiresAt: now.Add(time.Hour), CreatedBy: "t", CreatedAt: now}
	if err := db.CreateClaim(ctx, c, "h1"); err != nil {
		t.Fatal(err)
	}
	c.ID, c.ExpiresAt = "clm_2", now.Add(-time.Second)
	db.CreateClaim(ctx, c, "h2")
	dev := func(id string) NewDevice {
		return NewDevice{ID: id, Serial: "S" + id, CertSerial: "c" + id, CertPEM: "pem", MACs: []string{"02:00:00:00:00:01"}}
	}
	for _, id := range []string{"a", "b"} {
		if _, err := db.Enrol(ctx, "h1", dev(id), now); err != nil {
			t.Fatalf("enrol %s: %v", id, err)
		}
	}
	if d, err := db.Enrol(ctx, "h1", dev("a"), now); err != nil || d.ID != "a" {
		t.Fatalf("re-enrol of the same device with the same claim: %v", err)
	}
	for _, tc := range []struct {
		hash string
		want error
	}{{"h1", ErrClaimUsed}, {"h2", ErrClaimExpired}, {"nope", ErrClaimUnknown}} {
		if _, err := db.Enrol(ctx, tc.hash, dev("c"), now); !errors.Is(err, tc.want) {
			t.Fatalf("enrol with %s: %v, want %v", tc.hash, err, tc.want)
		}
	}
	if _, err := db.Device(ctx, "c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused device stored: %v", err)
	}
	cs, _ := db.Claims(ctx)
	if cs[0].Uses != 2 || cs[1].Uses != 0 {
		t.Fatalf("uses %d %d", cs[0].Uses, cs[1].Uses)
	}
	if err := db.PutGroup(ctx, "lab", "version: 1\n", "t"); err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 3; want++ {
		v, err := db.UpdateBundle(ctx, "a", func(in RenderInput, version uint64) ([]byte, error) {
			if !in.HasGroup || in.GroupConfig != "version: 1\n" {
				t.Fatalf("render input %+v", in)
			}
			return []byte("bundle"), nil
		})
		if err != nil || v != want {
			t.Fatalf("bundle version %d, %v; want %d", v, err, want)
		}
	}
	if err := db.Revoke(ctx, "a", "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DeviceByCert(ctx, "ca"); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("revoked cert: %v", err)
	}
	if gs, _ := db.Groups(ctx); len(gs) != 1 || gs[0].Devices != 2 {
		t.Fatalf("groups %+v", gs)
	}
}

// TestUpgrade opens a registry made by the first schema, with a device in it, with the
// current code: the migrations bring it up to date and the device keeps working.
func TestUpgrade(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testUpgrade(t, "sqlite:"+filepath.Join(t.TempDir(), "f.db")) })
	t.Run("postgres", func(t *testing.T) { testUpgrade(t, pgtest.Start(t)) })
}

func testUpgrade(t *testing.T, dsn string) {
	ctx := context.Background()
	all := migrations
	migrations = all[:1]
	db, err := Open(ctx, dsn)
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	db.CreateClaim(ctx, api.ClaimToken{ID: "clm_1", Group: "lab", MaxUses: 1, ExpiresAt: now.Add(time.Hour), CreatedBy: "t", CreatedAt: now}, "h1")
	if _, err := db.Enrol(ctx, "h1", NewDevice{ID: "a", Serial: "S", CertSerial: "c1", CertPEM: "pem"}, now); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(ctx, dsn); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer db.Close()
	if v, _ := db.SchemaVersion(ctx); v != len(migrations) {
		t.Fatalf("schema %d after upgrade, want %d", v, len(migrations))
	}
	if d, err := db.DeviceByCert(ctx, "c1"); err != nil || d.ID != "a" {
		t.Fatalf("device after upgrade: %+v %v", d, err)
	}
	if err := db.RenewCert(ctx, "a", "c1", "c2", "pem2"); err != nil {
		t.Fatal(err)
	}
	for _, serial := range []string{"c1", "c2"} {
		if d, err := db.DeviceByCert(ctx, serial); err != nil || d.ID != "a" {
			t.Fatalf("certificate %s after renewal: %v", serial, err)
		}
	}
	if err := db.RenewCert(ctx, "a", "c1", "c3", "pem3"); err != nil { // the answer to the first renewal was lost
		t.Fatal(err)
	}
	if _, err := db.DeviceByCert(ctx, "c2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a certificate never received is still valid: %v", err)
	}
	if err := db.RenewCert(ctx, "a", "c9", "c4", "pem4"); !errors.Is(err, ErrConflict) {
		t.Fatalf("renewal with an unknown certificate: %v", err)
	}
}
