package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/edgeflux/edge/internal/token"
)

// secretEnv names the environment variable that holds the token secret when -secret-file is
// not given; it is the same variable edged reads.
const secretEnv = "EDGED_AUTH_SECRET"

// cmdToken is "edgectl token": it mints an access token (docs/room-protocol.md) and prints it
// alone on stdout, so $(edgectl token ...) works in scripts. -h returns flag.ErrHelp.
func cmdToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edgectl token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: edgectl token -room ROOM -identity ID [-name NAME] [-publish] [-subscribe] [-admin] [-ttl 1h] [-secret-file PATH]\n\n"+
			"Mints an access token signed with edged's auth secret, read from -secret-file or $%s.\n\n", secretEnv)
		fs.PrintDefaults()
	}
	room := fs.String("room", "", `room the token is for; "*" (any room) needs -admin`)
	identity := fs.String("identity", "", "participant identity (the token's sub), unique in the room")
	name := fs.String("name", "", "display name (optional)")
	publish := fs.Bool("publish", false, "grant: publish tracks")
	subscribe := fs.Bool("subscribe", false, "grant: receive others' tracks")
	admin := fs.Bool("admin", false, "grant: /api/* and /metrics")
	ttl := fs.Duration("ttl", time.Hour, fmt.Sprintf("how long the token is valid, at most %s", token.MaxLifetime))
	secretFile := fs.String("secret-file", "", "file holding the secret (edged's state directory auth.secret); default $"+secretEnv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("token: unexpected argument %q; every option is a flag (see edgectl token -h)", fs.Arg(0))
	case *room == "":
		return errors.New("token: -room is required")
	case *identity == "":
		return errors.New("token: -identity is required")
	case !*publish && !*subscribe && !*admin:
		return errors.New("token: grants nothing; give at least one of -publish, -subscribe, -admin")
	case *ttl <= 0 || *ttl > token.MaxLifetime:
		return fmt.Errorf("token: -ttl %s: must be more than 0 and at most %s", *ttl, token.MaxLifetime)
	case *room == token.AnyRoom && !*admin:
		return fmt.Errorf("token: -room %q (any room) is only allowed with -admin", token.AnyRoom)
	}
	secret, err := loadSecret(*secretFile)
	if err != nil {
		return err
	}
	now := time.Now()
	tok, err := token.Mint(secret, token.Claims{
		Identity:  *identity,
		Name:      *name,
		Room:      *room,
		Grants:    token.Grants{Publish: *publish, Subscribe: *subscribe, Admin: *admin},
		IssuedAt:  now,
		NotBefore: now,
		ExpiresAt: now.Add(*ttl),
	})
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// loadSecret reads the secret from path, or from $EDGED_AUTH_SECRET when path is empty. It
// never creates one: a token signed with a secret edged does not know is useless.
func loadSecret(path string) ([]byte, error) {
	if path != "" {
		s, err := token.ReadSecret(path)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		return s, nil
	}
	v, ok := os.LookupEnv(secretEnv)
	if !ok {
		return nil, fmt.Errorf("token: no secret: give -secret-file (edged's state directory holds auth.secret) or set %s", secretEnv)
	}
	s, err := token.ParseSecret([]byte(v))
	if err != nil {
		return nil, fmt.Errorf("token: %s: %w", secretEnv, err)
	}
	return s, nil
}
