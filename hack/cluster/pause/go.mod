module teresa.local/pause

go 1.26
