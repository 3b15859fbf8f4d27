"""Pages of the stream browser."""
from django.http import HttpResponse


def stream_list(request):
    return HttpResponse("")


stream_detail = event_log = event_detail = stream_list
