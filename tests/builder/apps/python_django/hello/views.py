import sys

from django.shortcuts import render


def index(request):
    return render(request, "index.html", {"python": "%d.%d" % sys.version_info[:2]})
