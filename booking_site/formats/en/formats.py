"""Date formats for English, as Django's own but with seconds: the admin's order history and
payment attempts happen within a second of each other."""

DATETIME_FORMAT = "N j, Y, H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
