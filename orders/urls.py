from django.urls import path

from orders import views

app_name = "orders"
urlpatterns = [
    path("flights/<flight_id:flight_id>/", views.choose_seats, name="choose-seats"),
    path("flights/<flight_id:flight_id>/hold", views.start, name="start"),
    path("orders/<order_id:order_id>/", views.detail, name="detail"),
    path("orders/<order_id:order_id>/seats", views.toggle_seat, name="seats"),
    path("orders/<order_id:order_id>/pay", views.pay, name="pay"),
    path("orders/<order_id:order_id>/cancel", views.cancel, name="cancel"),
    path("bookings/<str:token>/", views.booking, name="booking"),
]
