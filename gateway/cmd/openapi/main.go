// Command openapi writes the OpenAPI document of the HTTP API, generated
// from the gateway's route table and the proto descriptors, to a file
// (docs/openapi.json through `go generate ./gateway/`) or to stdout.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/heartbeat-sidecar/heartbeat/gateway"
)

func main() {
	out := flag.String("o", "", "file to write (default: stdout)")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "openapi:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	doc, err := gateway.Document(gateway.Routes())
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(doc)
		return err
	}
	if err := os.WriteFile(out, doc, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}
