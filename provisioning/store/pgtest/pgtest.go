// Package pgtest starts a real, throw-away PostgreSQL server for tests: initdb and postgres
// from Debian's postgresql package, run as the postgres user (initdb refuses root), listening
// only on a unix socket in a temporary directory.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// BinDir is where Debian installs PostgreSQL 15's server programs.
var BinDir = "/usr/lib/postgresql/15/bin"

var dbSeq atomic.Int64

// Start starts a PostgreSQL server for the test (stopped at cleanup) and returns the URL of a
// new, empty database on it. It skips the test, saying why, when the PostgreSQL binaries or
// the postgres user are missing.
func Start(t testing.TB) string {
	t.Helper()
	initdb, postgres := filepath.Join(BinDir, "initdb"), filepath.Join(BinDir, "postgres")
	if _, err := os.Stat(postgres); err != nil {
		t.Skipf("PostgreSQL server binaries not found in %s (apt-get install postgresql-15): %v", BinDir, err)
	}
	cred, err := postgresUser()
	if err != nil {
		t.Skipf("cannot run PostgreSQL as the postgres user: %v", err)
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	cmd := exec.Command(initdb, "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	srv := exec.Command(postgres, "-D", data, "-k", dir, "-c", "listen_addresses=", "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200")
	srv.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL} // no orphan if the test binary dies
	logf, _ := os.Create(filepath.Join(dir, "postgres.log"))
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Process.Kill()
			<-done
		}
		logf.Close()
	})
	admin := fmt.Sprintf("postgres://postgres@/postgres?host=%s&sslmode=disable", dir)
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			t.Fatalf("postgres exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres did not accept connections in 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	name := "fleet_" + strconv.FormatInt(dbSeq.Add(1), 10)
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&sslmode=disable", name, dir)
}

func postgresUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil // not root: run as ourselves (initdb accepts any user but root)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
