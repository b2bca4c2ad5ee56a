// Command composecheck loads a compose file with the Compose Specification's own loader
// (compose-go, the library inside `docker compose`) and prints the project as Docker Compose
// would run it, as JSON: anchors merged, paths resolved, defaults filled in. A file the loader
// refuses (schema, undefined networks or volumes, depends_on cycles ...) exits 1 with its error.
//
//	composecheck [-dir DIR] FILE
//
// The environment is deliberately empty, so the file must work without any variable set on
// the host: a `${VAR:?}` or a default that hides a missing secret shows up here.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	dir := flag.String("dir", ".", "project directory (relative paths resolve against it)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: composecheck [-dir DIR] FILE")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(
		[]string{flag.Arg(0)},
		cli.WithWorkingDirectory(*dir),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(append(out, '\n'))
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "composecheck: %v\n", err)
	os.Exit(1)
}
