// A small web app laid out like a getting-started app: a main package and an internal one.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"

	"github.com/example/go-getting-started/internal/greeting"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		log.Fatal("$PORT must be set")
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s (built with %s)", greeting.For("Go"), runtime.Version())
	})
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
