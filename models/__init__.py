"""voxroom.models"""
