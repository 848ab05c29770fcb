package main

import (
	"log"
	"net/http"
	"os"

	"example.com/quote"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(quote.Hello())) })
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
