package main

import (
	"crypto/ed25519"

	"github.com/edgeflux/edge/provisioning/bundle"
)

func fleetKeyID(k ed25519.PrivateKey) string { return bundle.KeyID(k.Public().(ed25519.PublicKey)) }
