from services.dispatcher.service import run
from services.dispatcher.settings import DispatcherSettings
from shared.runtime import main

settings = DispatcherSettings()
main("dispatcher", settings, lambda: run(settings))
