"""The web dashboard's static files (index.html, app.js, app.css), served by service/api.py."""
