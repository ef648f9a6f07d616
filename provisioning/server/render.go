package server

import (
	"bytes"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/edgeflux/edge/internal/config"
)

// MaxConfigSize bounds a template or an override.
const MaxConfigSize = 64 << 10

// Render makes a device's edged configuration: the group template with the device's
// override merged over it (mappings merge key by key, anything else replaces). The result must
// be a configuration edged accepts (config.Parse and Validate): the server never signs one
// edged would reject.
func Render(template, override, where string) (string, error) {
	out := template
	if override != "" {
		var base, over yaml.Node
		if err := yaml.Unmarshal([]byte(template), &base); err != nil {
			return "", fmt.Errorf("%s: template: %w", where, err)
		}
		if err := yaml.Unmarshal([]byte(override), &over); err != nil {
			return "", fmt.Errorf("%s: override: %w", where, err)
		}
		if len(over.Content) > 0 {
			if len(base.Content) == 0 {
				base = over
			} else {
				if err := mergeNode(base.Content[0], over.Content[0]); err != nil {
					return "", fmt.Errorf("%s: override: %w", where, err)
				}
			}
		}
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(&base); err != nil {
			return "", fmt.Errorf("%s: %w", where, err)
		}
		enc.Close()
		out = buf.String()
	}
	if err := CheckConfig(out, where); err != nil {
		return "", err
	}
	return out, nil
}

// CheckConfig returns edged's own complaint about a configuration, if it has one.
func CheckConfig(yml, where string) error {
	if len(yml) > MaxConfigSize {
		return fmt.Errorf("%s: %d bytes, the limit is %d", where, len(yml), MaxConfigSize)
	}
	cfg, err := config.Parse([]byte(yml), where)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: edged would refuse it:\n%w", where, err)
	}
	return nil
}

func mergeNode(base, over *yaml.Node) error {
	if base.Kind != yaml.MappingNode || over.Kind != yaml.MappingNode {
		return errors.New("template and override must both be YAML mappings")
	}
	for i := 0; i+1 < len(over.Content); i += 2 {
		k, v := over.Content[i], over.Content[i+1]
		found := false
		for j := 0; j+1 < len(base.Content); j += 2 {
			if base.Content[j].Value == k.Value {
				found = true
				if base.Content[j+1].Kind == yaml.MappingNode && v.Kind == yaml.MappingNode {
					if err := mergeNode(base.Content[j+1], v); err != nil {
						return err
					}
				} else {
					base.Content[j+1] = v
				}
			}
		}
		if !found {
			base.Content = append(base.Content, k, v)
		}
	}
	return nil
}
