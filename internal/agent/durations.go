package agent

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// badDuration finds, in the YAML document b decoded into a value of type t, the first
// duration written without a unit or not as a duration at all, and says so with its
// key's path: "timings.probe_interval: 500 needs a unit, e.g. 500ms". yaml's own
// message names neither the key nor the fix. nil when every duration reads.
func badDuration(b []byte, t reflect.Type) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	return durationIn(doc.Content[0], t, "")
}

func durationIn(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Duration]() {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			return nil
		}
		if _, err := time.ParseDuration(n.Value); err == nil {
			return nil
		}
		if _, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return fmt.Errorf("%s: %s needs a unit, e.g. %sms or %ss", path, n.Value, n.Value, n.Value)
		}
		return fmt.Errorf("%s: %q is not a duration: write it as e.g. 500ms, 2s or 1m30s", path, n.Value)
	}
	if t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		for j := 0; j < t.NumField(); j++ {
			f := t.Field(j)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name != key || !f.IsExported() {
				continue
			}
			p := key
			if path != "" {
				p = path + "." + key
			}
			if err := durationIn(val, f.Type, p); err != nil {
				return err
			}
		}
	}
	return nil
}
