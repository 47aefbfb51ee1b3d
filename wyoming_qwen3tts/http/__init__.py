"""The second front door: an OpenAI-compatible speech API, voice management, health endpoints and a small
web page, served with aiohttp on the same event loop (and the same engines) as the Wyoming server.

    app.py         the aiohttp application, middlewares, start/stop (HttpServer)
    openai_api.py  /v1/audio/speech, /v1/audio/voices, /v1/models
    inline_clone.py  inline cloning fields (ref_audio, ref_text, x_vector_only_mode), unknown-field check
    coqui_api.py   /api/tts (Coqui style: wav/ogg, model, speakers), /speakers
    voices_api.py  /v1/voices: list, upload, design, delete (the voice library's validation)
    encode.py      PCM -> mp3 / opus / flac / wav / pcm, streamed or whole
    tempo.py       pitch-preserving speed change (WSOLA)
    auth.py        optional bearer API key and peer-address allow-list
    context.py     what every route reaches: the server state, the HTTP settings
    errors.py      OpenAI-style JSON errors with stable codes and HTTP statuses
    static/        the web page (one dependency-free HTML file)
"""
