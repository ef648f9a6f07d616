package device_test

import "encoding/base64"

func mustB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
